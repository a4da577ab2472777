//! Last use: recorded in memory on every grant, written to `status.lastUsedAt` at most once per
//! key per interval, never moving backwards.
//!
//! When a pending use is written:
//! - the first use of an issuance (the status shows no use since issuance, rotation or
//!   reactivation) at the next tick, so a key is never deactivated as unused while its first use
//!   waits (`keys::schedule::LAST_USE_WRITE_DELAY`);
//! - a later one once the status's `lastUsedAt` is an interval old, whoever wrote it: a replica
//!   that sees through its watch a use written by another within the interval writes nothing, so
//!   writes follow the keys in use, not the replica count or the request rate
//!   (`keys::schedule::MAX_LAST_USE_WRITE_INTERVAL` bounds the interval);
//! - never a use the status already holds.
//!
//! Each patch carries the `resourceVersion` the replica last saw, so a patch based on a stale view
//! fails with 409 and is reconsidered after the watch delivers the newer status — a later
//! `lastUsedAt` is never overwritten by an earlier.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::check::Verifier;
use super::index::{KeyRecord, KeyRef};
use crate::api::access_key::AccessKey;
use crate::keys::schedule::whole_seconds;
use crate::sync::{lock, read, write};

/// Field manager of the verifier's status patches.
pub const FIELD_MANAGER: &str = "keywarden-verifier";

/// Uses not yet written, and this replica's latest write of each key.
#[derive(Default)]
pub struct LastUse {
    /// Latest unwritten use per key, in Unix nanoseconds; [`NO_USE`] once taken.
    // why: every granted request records a use; an atomic under a shared read lock keeps the
    // request threads from queueing on one mutex (the map's write lock is taken once per key).
    pending: RwLock<HashMap<KeyRef, AtomicI64>>,
    flushed: Mutex<HashMap<KeyRef, Written>>,
}

/// One write of a key's `lastUsedAt` by this replica.
#[derive(Clone, Copy, Debug)]
struct Written {
    at: Instant,
    /// The use written (whole seconds).
    used_at: DateTime<Utc>,
}

/// What to do with a pending use at a flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    Write,
    /// Not yet: a write of this key is less than an interval old; keep the use pending.
    Later,
    /// The status already holds this use or a later one.
    Covered,
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

    /// Takes every recorded, unwritten use.
    fn take_all(&self) -> Vec<(KeyRef, DateTime<Utc>)> {
        read(&self.pending)
            .iter()
            .filter_map(|(key, latest)| {
                use_at(latest.swap(NO_USE, Ordering::Relaxed)).map(|at| (key.clone(), at))
            })
            .collect()
    }

    /// Puts back a use not written (failed or not yet due), unless a later one was recorded
    /// meanwhile.
    fn restore(&self, key: &KeyRef, at: DateTime<Utc>) {
        self.record(key, at);
    }

    fn written(&self, key: &KeyRef) -> Option<Written> {
        lock(&self.flushed).get(key).copied()
    }

    fn mark_flushed(&self, key: KeyRef, written: Written) {
        lock(&self.flushed).insert(key, written);
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

/// Whether the use `used_at` (whole seconds) of the key `record` describes is written now.
fn due(
    record: &KeyRecord,
    used_at: DateTime<Utc>,
    own: Option<Written>,
    interval: Duration,
    now: Instant,
    wall_now: DateTime<Utc>,
) -> Due {
    let status = record.last_used_at;
    if status.is_some_and(|written| written >= used_at) {
        return Due::Covered;
    }
    let basis = record.unused_basis;
    let after_basis = |at: DateTime<Utc>| basis.is_none_or(|basis| at >= basis);
    let issuance_used = status.is_some_and(after_basis);
    let own_wrote_issuance = own.is_some_and(|own| after_basis(own.used_at));
    // why: the controller gives an issuance without a recorded use only a few seconds of slack
    // past its unused period, so its first use is written at once.
    if !issuance_used && !own_wrote_issuance {
        return Due::Write;
    }
    let own_elapsed = own.map(|own| now.saturating_duration_since(own.at));
    // why: a status time is truncated to the second, so the use it records may be up to a
    // second later; without this, replicas took turns writing a key every interval less 1 s.
    let status_elapsed = status.map(|written| {
        (wall_now - written)
            .to_std()
            .unwrap_or_default()
            .saturating_sub(Duration::from_secs(1))
    });
    let interval_old = |elapsed: Option<Duration>| elapsed.is_none_or(|e| e >= interval);
    if interval_old(own_elapsed) && interval_old(status_elapsed) {
        Due::Write
    } else {
        Due::Later
    }
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

/// Writes the uses of every key due for a write (see the module documentation).
pub async fn flush_due(verifier: &Verifier, client: &Client, interval: Duration) {
    let last_use = verifier.last_use();
    last_use.retain(|key| verifier.index().record(key).is_some());
    let now = Instant::now();
    let wall_now = Utc::now();
    let mut writes = Vec::new();
    for (key, used_at) in last_use.take_all() {
        let Some(record) = verifier.index().record(&key) else {
            continue;
        };
        let written_use = whole_seconds(used_at);
        let own = last_use.written(&key);
        match due(&record, written_use, own, interval, now, wall_now) {
            Due::Covered => {}
            Due::Later => last_use.restore(&key, used_at),
            Due::Write => writes.push((key, used_at, record)),
        }
    }
    // why: with many keys in use, one write at a time could not keep up with the interval.
    let lags: Vec<Duration> = futures::stream::iter(writes)
        .map(|(key, used_at, record)| {
            write_use(verifier, client, key, used_at, record, interval, now)
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .filter_map(|lag| async move { lag })
        .collect()
        .await;
    verifier
        .metrics()
        .set_flush_lag(lags.into_iter().max().unwrap_or_default());
}

/// Status writes of one flush in flight at once.
const CONCURRENT_WRITES: usize = 8;

/// Writes one use; returns its age once written.
async fn write_use(
    verifier: &Verifier,
    client: &Client,
    key: KeyRef,
    used_at: DateTime<Utc>,
    record: Arc<KeyRecord>,
    interval: Duration,
    now: Instant,
) -> Option<Duration> {
    let last_use = verifier.last_use();
    let written_use = whole_seconds(used_at);
    // why: a flush of many keys takes a while; by a key's turn another replica's write of it
    // may have arrived through the watch, which makes this one redundant (or a 409).
    let record = match verifier.index().record(&key) {
        Some(fresh) if fresh.resource_version == record.resource_version => record,
        Some(fresh) => {
            let own = last_use.written(&key);
            match due(
                &fresh,
                written_use,
                own,
                interval,
                Instant::now(),
                Utc::now(),
            ) {
                Due::Write => fresh,
                Due::Covered => return None,
                Due::Later => {
                    last_use.restore(&key, used_at);
                    return None;
                }
            }
        }
        None => return None,
    };
    let api: Api<AccessKey> = Api::namespaced(client.clone(), &key.namespace);
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": record.resource_version},
        "status": {"lastUsedAt": written_use},
    });
    let params = PatchParams::apply(FIELD_MANAGER);
    match api
        .patch_status(&key.name, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            verifier.metrics().count_flush_write();
            last_use.mark_flushed(
                key,
                Written {
                    at: now,
                    used_at: written_use,
                },
            );
            Some((Utc::now() - written_use).to_std().unwrap_or_default())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => None,
        Err(error) => {
            // why: 409 means another writer moved the key; the watch brings its status and
            // the next tick compares again, so an earlier use never overwrites a later one.
            tracing::debug!(key = %key, %error, "lastUsedAt patch failed; will retry");
            verifier.metrics().count_flush_error();
            last_use.restore(&key, used_at);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::access_key::{OwnerKind, Phase};

    fn key(name: &str) -> KeyRef {
        KeyRef {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    /// A key issued at `at(0)` whose status shows `last_used_at`.
    fn record(last_used_at: Option<DateTime<Utc>>) -> KeyRecord {
        KeyRecord {
            key_ref: key("a"),
            owner: "alice".into(),
            owner_kind: OwnerKind::User,
            scopes: Arc::from(Vec::new()),
            allowed_origins: Arc::from(Vec::new()),
            spec_active: true,
            deleting: false,
            phase: Some(Phase::Active),
            expires_at: None,
            last_used_at,
            unused_basis: Some(at(0)),
            resource_version: None,
            grant_headers: Arc::default(),
            credentials: Box::default(),
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

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
    fn the_first_use_of_an_issuance_is_written_at_once() {
        let start = Instant::now();
        assert_eq!(
            due(&record(None), at(5), None, MINUTE, start, at(5)),
            Due::Write
        );
        // why: a use from before a rotation or reactivation does not hold back the first after.
        let rotated = KeyRecord {
            unused_basis: Some(at(100)),
            ..record(Some(at(90)))
        };
        let own = Written {
            at: start,
            used_at: at(90),
        };
        assert_eq!(
            due(&rotated, at(101), Some(own), MINUTE, start, at(101)),
            Due::Write
        );
    }

    #[test]
    fn a_later_use_waits_an_interval_from_the_last_write_whoever_made_it() {
        let start = Instant::now();
        // why: another replica wrote at(10); this replica never wrote the key.
        let used = record(Some(at(10)));
        assert_eq!(due(&used, at(30), None, MINUTE, start, at(30)), Due::Later);
        // why: at(10) may stand for a use up to a second later.
        assert_eq!(due(&used, at(70), None, MINUTE, start, at(70)), Due::Later);
        assert_eq!(due(&used, at(71), None, MINUTE, start, at(71)), Due::Write);
        // why: this replica's own write is not yet in its view of the status.
        let own = Written {
            at: start,
            used_at: at(10),
        };
        assert_eq!(
            due(
                &record(None),
                at(20),
                Some(own),
                MINUTE,
                start + Duration::from_secs(10),
                at(20)
            ),
            Due::Later
        );
        assert_eq!(
            due(
                &record(None),
                at(70),
                Some(own),
                MINUTE,
                start + MINUTE,
                at(70)
            ),
            Due::Write
        );
    }

    #[test]
    fn a_use_the_status_already_holds_is_not_written() {
        let start = Instant::now();
        let later = record(Some(at(40)));
        assert_eq!(
            due(&later, at(40), None, MINUTE, start, at(200)),
            Due::Covered
        );
        assert_eq!(
            due(&later, at(30), None, MINUTE, start, at(200)),
            Due::Covered
        );
    }

    #[test]
    fn a_restored_use_never_replaces_a_later_one() {
        let uses = LastUse::default();
        let earlier = Utc::now();
        let later = earlier + chrono::Duration::seconds(5);
        uses.record(&key("a"), earlier);
        let taken = uses.take_all();
        assert_eq!(taken, vec![(key("a"), earlier)]);
        assert!(uses.take_all().is_empty(), "a taken use is not taken twice");
        uses.record(&key("a"), later);
        uses.restore(&key("a"), earlier);
        assert_eq!(uses.pending(&key("a")), Some(later));
    }
}
