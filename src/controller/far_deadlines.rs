//! Deadlines too far away to wait for in kube-runtime's scheduler. A key whose next deadline
//! (expiry, unused deactivation, rotation, grace end) is more than [`HORIZON`] away is not
//! requeued; its deadline is noted here (16 bytes) and one periodic sweep over the key cache
//! re-triggers it once the deadline comes within the horizon, when it is requeued as before.
// why: every issued key waited in the scheduler for a deadline months away, holding its
// request and object reference twice (~0.5-1 KiB per key).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::sync::lock;

/// Deadlines at most this far away wait in the scheduler.
pub const HORIZON: Duration = Duration::from_secs(60 * 60);
/// How often the far deadlines are swept; less than [`HORIZON`], so every deadline is found
/// inside the horizon, at least `HORIZON - SWEEP_EVERY` before it.
pub const SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);

/// A key's identity in the table: 64 bits of SHA-256 of its namespace and name.
// why: two keys with the same identity share the earlier deadline and are both re-triggered
// by it: a collision costs a spurious reconcile, never a missed deadline.
type KeyId = u64;

fn key_id(namespace: &str, name: &str) -> KeyId {
    let digest = Sha256::new()
        .chain_update(namespace.as_bytes())
        .chain_update([0])
        .chain_update(name.as_bytes())
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(id)
}

/// The far deadlines of keys, by key identity, as Unix seconds (rounded up).
#[derive(Default)]
pub struct FarDeadlines {
    due: Mutex<HashMap<KeyId, i64>>,
}

impl FarDeadlines {
    /// When a reconcile of key `namespace/name` looks again when its next deadline is `wait`
    /// from `now` (`None`: no deadline): after `wait` within the horizon, else the deadline is
    /// noted for the sweep and the key waits for a change (`None`).
    pub fn requeue(
        &self,
        namespace: &str,
        name: &str,
        wait: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Option<Duration> {
        let wait = wait?;
        if wait <= HORIZON {
            return Some(wait);
        }
        let seconds = i64::try_from(wait.as_secs()).unwrap_or(i64::MAX);
        let at = now.timestamp().saturating_add(seconds).saturating_add(1);
        // why: the earlier deadline stays: a stale one costs one reconcile that notes the
        // new one, a lost one would be a missed deadline.
        lock(&self.due)
            .entry(key_id(namespace, name))
            .and_modify(|due| *due = (*due).min(at))
            .or_insert(at);
        None
    }

    /// The keys among `keys` (namespace, name) whose noted deadline is within the horizon
    /// of `now`; their notes are removed (their reconcile requeues them or notes anew), as
    /// are notes of keys no longer in `keys`.
    pub fn sweep<'a, T>(
        &self,
        keys: impl IntoIterator<Item = (&'a str, &'a str, T)>,
        now: DateTime<Utc>,
    ) -> Vec<T> {
        let horizon = i64::try_from(HORIZON.as_secs()).unwrap_or(i64::MAX);
        let until = now.timestamp().saturating_add(horizon);
        let mut due = lock(&self.due);
        let mut live = HashSet::with_capacity(due.len());
        let mut fired = Vec::new();
        let mut fired_ids = HashSet::new();
        for (namespace, name, key) in keys {
            let id = key_id(namespace, name);
            live.insert(id);
            if due.get(&id).is_some_and(|at| *at <= until) {
                fired_ids.insert(id);
                fired.push(key);
            }
        }
        due.retain(|id, _| live.contains(id) && !fired_ids.contains(id));
        if due.capacity() > 2 * due.len() + 64 {
            due.shrink_to_fit();
        }
        fired
    }

    /// How many far deadlines are noted.
    #[cfg(test)]
    pub fn noted(&self) -> usize {
        lock(&self.due).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn requeued(again: &Option<Duration>) -> bool {
        again.is_some()
    }

    #[test]
    fn a_near_deadline_is_requeued_and_a_far_one_noted() {
        let far = FarDeadlines::default();
        let near = far.requeue("team-a", "ci", Some(HORIZON), at(0));
        assert_eq!(near, Some(HORIZON));
        assert_eq!(far.noted(), 0);
        let month = Duration::from_secs(30 * 86_400);
        assert_eq!(far.requeue("team-a", "ci", Some(month), at(0)), None);
        assert_eq!(far.noted(), 1);
        assert_eq!(far.requeue("team-a", "other", None, at(0)), None);
        assert_eq!(far.noted(), 1, "no deadline, nothing noted");
    }

    /// Sweeps every `SWEEP_EVERY` from `start` and reconciles the key when fired, as the
    /// controller does; returns the wait the reconcile requeued with and when.
    fn run_until_requeued(
        far: &FarDeadlines,
        deadline: DateTime<Utc>,
        start: DateTime<Utc>,
    ) -> (DateTime<Utc>, Duration) {
        let step = chrono::Duration::from_std(SWEEP_EVERY).unwrap();
        let mut now = start;
        loop {
            assert!(now <= deadline, "the deadline passed without a reconcile");
            let fired = far.sweep([("team-a", "ci", ()), ("team-a", "other", ())], now);
            if !fired.is_empty() {
                let wait = (deadline - now).to_std().unwrap();
                let again = far.requeue("team-a", "ci", Some(wait), now);
                assert!(requeued(&again), "a fired key is requeued, not noted again");
                return (now, wait);
            }
            now += step;
        }
    }

    #[test]
    fn a_far_deadline_is_never_missed() {
        for offset in [0, 1, 599, 600, 3_599, 3_600, 3_601, 86_399] {
            let far = FarDeadlines::default();
            let deadline = at(180 * 86_400 + offset);
            let wait = (deadline - at(0)).to_std().unwrap();
            assert!(!requeued(&far.requeue("team-a", "ci", Some(wait), at(0))));
            // why: sweeps from the start would find nothing but take long in a debug build.
            let start = at(178 * 86_400);
            assert!(far.sweep([("team-a", "ci", ())], start).is_empty());
            let (fired_at, requeued_for) = run_until_requeued(&far, deadline, start);
            assert!(requeued_for <= HORIZON, "offset {offset}");
            // why: deadlines are noted rounded up to the next second.
            let ahead = HORIZON - SWEEP_EVERY - Duration::from_secs(1);
            assert!(
                deadline - fired_at >= chrono::Duration::from_std(ahead).unwrap(),
                "offset {offset}: found at least HORIZON - SWEEP_EVERY ahead"
            );
            assert_eq!(far.noted(), 0);
        }
    }

    #[test]
    fn the_earlier_deadline_stays_noted() {
        let far = FarDeadlines::default();
        let day = Duration::from_secs(86_400);
        far.requeue("team-a", "ci", Some(30 * day), at(0));
        far.requeue("team-a", "ci", Some(60 * day), at(0));
        let (fired_at, _) = run_until_requeued(&far, at(30 * 86_400 + 1), at(0));
        assert!(fired_at <= at(30 * 86_400));
    }

    #[test]
    fn a_sweep_forgets_keys_no_longer_cached() {
        let far = FarDeadlines::default();
        far.requeue(
            "team-a",
            "gone",
            Some(Duration::from_secs(86_400 * 30)),
            at(0),
        );
        assert!(far.sweep([("team-a", "ci", ())], at(0)).is_empty());
        assert_eq!(far.noted(), 0);
    }
}
