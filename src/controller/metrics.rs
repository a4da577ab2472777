//! Prometheus metrics of the controller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::cached_key::CachedKey;
use super::intake::Intake;
use crate::api::Phase;
use crate::sync::lock;

/// Label set of the keys-by-phase gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

/// Label set of the reconciliation queue gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// `issued`, `new` or `sweep` for what waits; `handed_out` for what kube-runtime holds.
    pub queue: &'static str,
}

/// The controller's metrics, registered in one registry.
pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    reconcile_errors: Counter,
    pub issuances: Counter,
    pub rotations: Counter,
    /// Workloads restarted for new credentials (`spec.rollout`).
    pub rollouts: Counter,
    /// SubjectAccessReviews sent to check owners' scopes.
    pub scope_reviews: Counter,
    keys_by_phase: Family<PhaseLabel, Gauge>,
    /// The key cache of the running (leader) controller, read at scrape time.
    keys: Mutex<Option<Store<CachedKey>>>,
    reconcile_queue: Family<QueueLabel, Gauge>,
    /// The running controller's intake, read at scrape time.
    intake: Mutex<Option<Arc<Intake<CachedKey>>>>,
    api_reachable: Gauge,
    api_silence_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keywarden");
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let reconcile_errors = Counter::default();
        let issuances = Counter::default();
        let rotations = Counter::default();
        let rollouts = Counter::default();
        let scope_reviews = Counter::default();
        let keys_by_phase = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "reconcile_duration_seconds",
            "Duration of AccessKey reconciliations",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "AccessKey reconciliations that failed",
            reconcile_errors.clone(),
        );
        registry.register(
            "issuances",
            "Secrets issued for new keys",
            issuances.clone(),
        );
        registry.register("rotations", "Key rotations", rotations.clone());
        registry.register(
            "rollouts",
            "Workloads restarted for new credentials (spec.rollout)",
            rollouts.clone(),
        );
        registry.register(
            "scope_access_reviews",
            "SubjectAccessReviews sent to check that owners hold their keys' scopes",
            scope_reviews.clone(),
        );
        registry.register("access_keys", "AccessKeys by phase", keys_by_phase.clone());
        let reconcile_queue = Family::<QueueLabel, Gauge>::default();
        registry.register(
            "reconcile_queue",
            "AccessKey reconciliations waiting, by lane (issued keys, new keys, sweeps), and handed to the reconcilers (handed_out)",
            reconcile_queue.clone(),
        );
        let api_reachable = Gauge::default();
        registry.register(
            "controller_api_reachable",
            "1 while the API server answered within --max-api-silence, else 0",
            api_reachable.clone(),
        );
        let api_silence_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "controller_api_silence_seconds",
            "Time since the API server last answered the controller",
            api_silence_seconds.clone(),
        );
        Self {
            registry,
            reconcile_duration,
            reconcile_errors,
            issuances,
            rotations,
            rollouts,
            scope_reviews,
            keys_by_phase,
            keys: Mutex::new(None),
            reconcile_queue,
            intake: Mutex::new(None),
            api_reachable,
            api_silence_seconds,
        }
    }
}

impl Metrics {
    /// Records one reconciliation.
    pub fn observe_reconcile(&self, took: Duration, failed: bool) {
        self.reconcile_duration.observe(took.as_secs_f64());
        if failed {
            self.reconcile_errors.inc();
        }
    }

    /// Points the keys-by-phase gauge at the running controller's cache (`None` when not leader).
    pub fn watch_keys(&self, keys: Option<Store<CachedKey>>) {
        *lock(&self.keys) = keys;
    }

    /// Points the reconciliation queue gauge at the running controller's intake (`None` when
    /// not leader: the gauge then reads nothing).
    pub fn watch_intake(&self, intake: Option<Arc<Intake<CachedKey>>>) {
        *lock(&self.intake) = intake;
    }

    /// Records whether the API server is reachable and how long it has been silent.
    pub fn set_api_contact(&self, reachable: bool, silence: Duration) {
        self.api_reachable.set(i64::from(reachable));
        self.api_silence_seconds.set(silence.as_secs_f64());
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let keys = lock(&self.keys).clone();
        self.keys_by_phase.clear();
        if let Some(keys) = keys {
            // why: counted first, then one gauge per phase: a label lookup per key made a scrape
            // of 100,000 keys cost tens of milliseconds of the controller's CPU.
            let mut counts: HashMap<Phase, i64> = HashMap::new();
            for key in keys.state() {
                let phase = key.phase().unwrap_or(Phase::Pending);
                *counts.entry(phase).or_default() += 1;
            }
            for (phase, count) in counts {
                self.keys_by_phase
                    .get_or_create(&PhaseLabel {
                        phase: format!("{phase:?}"),
                    })
                    .set(count);
            }
        }
        self.reconcile_queue.clear();
        if let Some(intake) = lock(&self.intake).clone() {
            let depth = intake.depth();
            for (queue, count) in [
                ("issued", depth.issued),
                ("new", depth.new),
                ("sweep", depth.sweep),
                ("handed_out", depth.handed_out),
            ] {
                self.reconcile_queue
                    .get_or_create(&QueueLabel { queue })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::ObjectRef;
    use kube::runtime::{reflector, watcher};

    use super::*;
    use crate::controller::intake::Lane;

    #[test]
    fn the_reconciliation_queue_is_read_by_lane_at_scrape_time() {
        let (store, _writer) = reflector::store::<CachedKey>();
        let intake = Arc::new(Intake::new(4, store, |_| Lane::Issued));
        intake.push(ObjectRef::new("a").within("team"), Lane::New);
        intake.push(ObjectRef::new("b").within("team"), Lane::New);
        intake.push(ObjectRef::new("c").within("team"), Lane::Issued);
        let metrics = Metrics::default();
        let queue = |text: &str| {
            let mut lines: Vec<String> = text
                .lines()
                .filter(|line| line.starts_with("keywarden_reconcile_queue{"))
                .map(String::from)
                .collect();
            lines.sort();
            lines
        };
        assert!(
            queue(&metrics.encode().unwrap()).is_empty(),
            "no intake: no gauge"
        );
        metrics.watch_intake(Some(intake));
        assert_eq!(
            queue(&metrics.encode().unwrap()),
            [
                r#"keywarden_reconcile_queue{queue="handed_out"} 0"#,
                r#"keywarden_reconcile_queue{queue="issued"} 1"#,
                r#"keywarden_reconcile_queue{queue="new"} 2"#,
                r#"keywarden_reconcile_queue{queue="sweep"} 0"#,
            ]
        );
        metrics.watch_intake(None);
        assert!(
            queue(&metrics.encode().unwrap()).is_empty(),
            "stepped down: no gauge"
        );
    }

    #[test]
    fn keys_are_counted_by_phase_and_a_key_without_status_is_pending() {
        let (store, mut writer) = reflector::store::<CachedKey>();
        for (name, phase) in [
            ("a", Some(Phase::Active)),
            ("b", Some(Phase::Active)),
            ("c", Some(Phase::Expired)),
            ("d", None),
        ] {
            let mut key = crate::controller::tests::key();
            key.metadata.name = Some(name.into());
            key.status = phase.map(|phase| crate::api::AccessKeyStatus {
                phase: Some(phase),
                ..Default::default()
            });
            writer.apply_watcher_event(&watcher::Event::Apply(CachedKey::try_from(key).unwrap()));
        }
        let metrics = Metrics::default();
        metrics.watch_keys(Some(store));
        let text = metrics.encode().unwrap();
        let mut gauges: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("keywarden_access_keys{"))
            .collect();
        gauges.sort();
        assert_eq!(
            gauges,
            [
                r#"keywarden_access_keys{phase="Active"} 2"#,
                r#"keywarden_access_keys{phase="Expired"} 1"#,
                r#"keywarden_access_keys{phase="Pending"} 1"#,
            ]
        );
    }
}
