//! Last use: recorded in memory on every grant, flushed to `status.lastUsedAt` at most once per
//! key per interval, never moving backwards.
//!
//! Several verifier replicas may flush the same key: each patch carries the `resourceVersion`
//! the replica last saw, so a patch based on a stale view fails with 409 and is retried after
//! the watch delivers the newer status — a later `lastUsedAt` is never overwritten by an earlier.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::check::Verifier;
use super::index::KeyRef;
use crate::api::access_key::AccessKey;
use crate::sync::{lock, read, write};

/// Field manager of the verifier's status patches.
pub const FIELD_MANAGER: &str = "keywarden-verifier";

/// Uses not yet written, and when each key was last written.
#[derive(Default)]
pub struct LastUse {
    /// Latest unwritten use per key, in Unix nanoseconds; [`NO_USE`] once taken.
    // why: every granted request records a use; an atomic under a shared read lock keeps the
    // request threads from queueing on one mutex (the map's write lock is taken once per key).
    pending: RwLock<HashMap<KeyRef, AtomicI64>>,
    flushed: Mutex<HashMap<KeyRef, Instant>>,
}

const NO_USE: i64 = i64::MIN;

impl LastUse {
    /// Records a use of `key` at `at` (keeps the latest).
    pub fn record(&self, key: &KeyRef, at: DateTime<Utc>) {
        let nanos = at.timestamp_nanos_opt().unwrap_or(i64::MAX);
        if let Some(latest) = read(&self.pending).get(key) {
            latest.fetch_max(nanos, Ordering::Relaxed);
            return;
        }
        write(&self.pending)
            .entry(key.clone())
            .or_insert_with(|| AtomicI64::new(NO_USE))
            .fetch_max(nanos, Ordering::Relaxed);
    }

    /// The recorded, unwritten use of `key`.
    pub fn pending(&self, key: &KeyRef) -> Option<DateTime<Utc>> {
        read(&self.pending)
            .get(key)
            .and_then(|latest| use_at(latest.load(Ordering::Relaxed)))
    }

    /// Takes the uses of keys not written within `interval`.
    fn take_due(&self, interval: Duration, now: Instant) -> Vec<(KeyRef, DateTime<Utc>)> {
        let flushed = lock(&self.flushed);
        read(&self.pending)
            .iter()
            .filter(|(key, _)| {
                flushed
                    .get(*key)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= interval)
            })
            .filter_map(|(key, latest)| {
                use_at(latest.swap(NO_USE, Ordering::Relaxed)).map(|at| (key.clone(), at))
            })
            .collect()
    }

    /// Puts back a use whose write failed, unless a later one was recorded meanwhile.
    fn restore(&self, key: KeyRef, at: DateTime<Utc>) {
        self.record(&key, at);
    }

    fn mark_flushed(&self, key: KeyRef, now: Instant) {
        lock(&self.flushed).insert(key, now);
    }

    /// Forgets keys no longer indexed, keeping memory bounded by the index.
    fn retain(&self, keep: impl Fn(&KeyRef) -> bool) {
        lock(&self.flushed).retain(|key, _| keep(key));
        write(&self.pending).retain(|key, _| keep(key));
    }
}

fn use_at(nanos: i64) -> Option<DateTime<Utc>> {
    (nanos != NO_USE).then(|| DateTime::from_timestamp_nanos(nanos))
}

/// Writes recorded uses until `shutdown`, then once more.
pub async fn flush_until_shutdown(
    verifier: Arc<Verifier>,
    client: Client,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let tick = interval.clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(tick) => {}
        }
        flush_due(&verifier, &client, interval).await;
    }
    flush_due(&verifier, &client, Duration::ZERO).await;
}

/// Writes the uses of every key due for a write.
pub async fn flush_due(verifier: &Verifier, client: &Client, interval: Duration) {
    let last_use = verifier.last_use();
    last_use.retain(|key| verifier.index().record(key).is_some());
    let now = Instant::now();
    let mut lag = Duration::ZERO;
    for (key, used_at) in last_use.take_due(interval, now) {
        let Some(record) = verifier.index().record(&key) else {
            continue;
        };
        let used_at = crate::keys::schedule::whole_seconds(used_at);
        if record
            .last_used_at
            .is_some_and(|written| written >= used_at)
        {
            continue;
        }
        let api: Api<AccessKey> = Api::namespaced(client.clone(), &key.namespace);
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": record.resource_version},
            "status": {"lastUsedAt": used_at},
        });
        let params = PatchParams::apply(FIELD_MANAGER);
        match api
            .patch_status(&key.name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                last_use.mark_flushed(key, now);
                lag = lag.max((Utc::now() - used_at).to_std().unwrap_or_default());
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                // why: 409 means another writer moved the key; the watch brings its status and
                // the next tick compares again, so an earlier use never overwrites a later one.
                tracing::debug!(key = %key, %error, "lastUsedAt patch failed; will retry");
                verifier.metrics().count_flush_error();
                last_use.restore(key, used_at);
            }
        }
    }
    verifier.metrics().set_flush_lag(lag);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> KeyRef {
        KeyRef {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn record_keeps_latest_use() {
        let uses = LastUse::default();
        let later = Utc::now();
        let earlier = later - chrono::Duration::seconds(5);
        uses.record(&key("a"), later);
        uses.record(&key("a"), earlier);
        assert_eq!(uses.pending(&key("a")), Some(later));
    }

    #[test]
    fn a_key_written_recently_is_not_due_until_interval_passes() {
        let uses = LastUse::default();
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        uses.record(&key("a"), Utc::now());
        assert_eq!(uses.take_due(minute, start).len(), 1);
        uses.mark_flushed(key("a"), start);
        uses.record(&key("a"), Utc::now());
        assert!(uses
            .take_due(minute, start + Duration::from_secs(30))
            .is_empty());
        assert_eq!(uses.take_due(minute, start + minute).len(), 1);
        assert!(
            uses.take_due(minute, start + 2 * minute).is_empty(),
            "a taken use is not taken twice"
        );
    }

    #[test]
    fn a_restored_use_never_replaces_a_later_one() {
        let uses = LastUse::default();
        let earlier = Utc::now();
        let later = earlier + chrono::Duration::seconds(5);
        uses.record(&key("a"), earlier);
        let taken = uses.take_due(Duration::ZERO, Instant::now());
        assert_eq!(taken, vec![(key("a"), earlier)]);
        uses.record(&key("a"), later);
        uses.restore(key("a"), earlier);
        assert_eq!(uses.pending(&key("a")), Some(later));
    }
}
