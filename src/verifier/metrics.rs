//! Prometheus metrics of the verifier.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Result label of a check.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum CheckResult {
    Valid,
    Unauthorized,
    ForbiddenOrigin,
    InsufficientScope,
    RateLimited,
    /// argon2 work saturated (503).
    Overloaded,
    /// The index is older than `--max-staleness` (503).
    Stale,
    Preflight,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: CheckResult,
}

/// Outcome label of a verified-cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum CacheOutcome {
    Hit,
    Miss,
    /// A wrong secret seen before, refused without hashing.
    KnownFailure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    outcome: CacheOutcome,
}

/// Every metric the verifier exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<ResultLabels, Counter>,
    cache: Family<CacheLabels, Counter>,
    // why: handles for the hot path; a family lookup takes a lock and hashes its labels.
    valid_requests: Counter,
    cache_hits: Counter,
    argon2_seconds: Histogram,
    flush_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    flush_writes: Counter,
    flush_errors: Counter,
    index_staleness_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    stale_answers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keywarden_verifier");
        let requests = Family::<ResultLabels, Counter>::default();
        registry.register("requests", "Checks answered, by result", requests.clone());
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_lookups",
            "Verified-cache lookups, by outcome",
            cache.clone(),
        );
        let argon2_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "argon2_seconds",
            "Time spent verifying one secret with argon2id",
            argon2_seconds.clone(),
        );
        let flush_lag_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "last_used_flush_lag_seconds",
            "Age of the oldest use written by the latest lastUsedAt flush",
            flush_lag_seconds.clone(),
        );
        let flush_writes = Counter::default();
        registry.register(
            "last_used_writes",
            "lastUsedAt status patches written",
            flush_writes.clone(),
        );
        let flush_errors = Counter::default();
        registry.register(
            "last_used_flush_errors",
            "lastUsedAt status patches that failed",
            flush_errors.clone(),
        );
        let index_staleness_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "index_staleness_seconds",
            "Time since the key index was last confirmed current with the API server",
            index_staleness_seconds.clone(),
        );
        let stale_answers = Counter::default();
        registry.register(
            "stale_answers",
            "Checks answered from an index older than --max-staleness (--when-stale=serve)",
            stale_answers.clone(),
        );
        let valid_requests = requests
            .get_or_create(&ResultLabels {
                result: CheckResult::Valid,
            })
            .clone();
        let cache_hits = cache
            .get_or_create(&CacheLabels {
                outcome: CacheOutcome::Hit,
            })
            .clone();
        Self {
            registry,
            requests,
            cache,
            valid_requests,
            cache_hits,
            argon2_seconds,
            flush_lag_seconds,
            flush_writes,
            flush_errors,
            index_staleness_seconds,
            stale_answers,
        }
    }
}

impl Metrics {
    pub fn count_request(&self, result: CheckResult) {
        match result {
            CheckResult::Valid => self.valid_requests.inc(),
            result => self.requests.get_or_create(&ResultLabels { result }).inc(),
        };
    }

    pub fn count_cache(&self, outcome: CacheOutcome) {
        match outcome {
            CacheOutcome::Hit => self.cache_hits.inc(),
            outcome => self.cache.get_or_create(&CacheLabels { outcome }).inc(),
        };
    }

    pub fn observe_argon2(&self, elapsed: std::time::Duration) {
        self.argon2_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn set_flush_lag(&self, lag: std::time::Duration) {
        self.flush_lag_seconds.set(lag.as_secs_f64());
    }

    pub fn count_flush_write(&self) {
        self.flush_writes.inc();
    }

    pub fn count_flush_error(&self) {
        self.flush_errors.inc();
    }

    pub fn set_index_staleness(&self, staleness: std::time::Duration) {
        self.index_staleness_seconds.set(staleness.as_secs_f64());
    }

    pub fn count_stale_answer(&self) {
        self.stale_answers.inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
