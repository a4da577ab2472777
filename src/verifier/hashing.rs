//! Bounded argon2 work: at most N verifications at once, a bounded wait queue, and one shared
//! run for concurrent requests presenting the same secret.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{OnceCell, Semaphore};

use super::guard::SecretMac;
use super::metrics::Metrics;
use super::stored_hash::StoredHash;
use crate::keys::material::SecretKey;
use crate::sync::lock;

/// Result of one argon2 verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    Matches,
    Mismatch,
    /// The wait queue is full; the caller should answer 429.
    Overloaded,
}

type InFlight = HashMap<(String, SecretMac), Arc<OnceCell<Verification>>>;

/// Runs argon2 verifications on the blocking pool within bounds.
pub struct Hasher {
    permits: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    queued: AtomicUsize,
    max_queued: usize,
    in_flight: Mutex<InFlight>,
}

impl Hasher {
    pub fn new(max_concurrent: usize, max_queued: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            running: Arc::default(),
            queued: AtomicUsize::new(0),
            max_queued,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// argon2 verifications running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Whether `secret` (whose MAC is `mac`) matches `hash`.
    pub async fn verify(
        &self,
        access_key_id: &str,
        mac: SecretMac,
        secret: SecretKey,
        hash: StoredHash,
        metrics: &Metrics,
    ) -> Verification {
        let flight_key = (access_key_id.to_owned(), mac);
        // why: a new key deployed to many clients at once is verified once, not once per
        // connection, so a cold cache does not queue dozens of identical argon2 runs.
        let cell = lock(&self.in_flight)
            .entry(flight_key.clone())
            .or_default()
            .clone();
        let verification = *cell
            .get_or_init(|| self.run_bounded(secret, hash, metrics))
            .await;
        let mut in_flight = lock(&self.in_flight);
        if in_flight
            .get(&flight_key)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            in_flight.remove(&flight_key);
        }
        verification
    }

    async fn run_bounded(
        &self,
        secret: SecretKey,
        hash: StoredHash,
        metrics: &Metrics,
    ) -> Verification {
        let Some(queued) = QueueSlot::take(&self.queued, self.max_queued) else {
            return Verification::Overloaded;
        };
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return Verification::Overloaded;
        };
        drop(queued);
        let started = Instant::now();
        let running = self.running.clone();
        // why: the permit lives with the blocking work, not with this future: a client that
        // disconnects mid-check drops the future, but the argon2 run goes on and must keep
        // its slot until it ends, or a disconnect storm would run unbounded argon2 at once.
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            running.fetch_add(1, Ordering::AcqRel);
            let _running = Running(&running);
            hash.verify(&secret)
        })
        .await;
        metrics.observe_argon2(started.elapsed());
        // why: a panicked verification is a failed one; never a grant.
        if matched.unwrap_or(false) {
            Verification::Matches
        } else {
            Verification::Mismatch
        }
    }
}

/// Counts one running argon2 verification until dropped.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A place in the wait queue, released on drop.
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(counter: &'a AtomicUsize, max: usize) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(counter))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hash::{hash_secret, HashParams};

    #[tokio::test]
    async fn concurrent_presentations_of_one_secret_share_one_argon2_run() {
        let params = HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let secret = SecretKey::generate();
        let hash = StoredHash::parse(&hash_secret(&secret, &params).unwrap(), Arc::new).unwrap();
        let hasher = Hasher::new(1, 64);
        let metrics = Metrics::default();
        let mac = super::super::guard::SecretMacer::random().mac("AKW", &secret);
        let runs = (0..8).map(|_| {
            let secret = SecretKey::parse(secret.expose()).unwrap();
            hasher.verify("AKW", mac, secret, hash.clone(), &metrics)
        });
        let results = futures::future::join_all(runs).await;
        assert!(results.iter().all(|r| *r == Verification::Matches));
        let text = metrics.encode().unwrap();
        let count = text
            .lines()
            .find(|l| l.starts_with("keywarden_verifier_argon2_seconds_count"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap();
        assert_eq!(count, "1", "{text}");
        assert!(lock(&hasher.in_flight).is_empty());
    }

    fn any_hash() -> StoredHash {
        let phc = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        StoredHash::parse(phc, Arc::new).unwrap()
    }

    #[tokio::test]
    async fn a_full_queue_answers_overloaded() {
        let hasher = Hasher::new(1, 0);
        let secret = SecretKey::generate();
        let mac = super::super::guard::SecretMacer::random().mac("AKW", &secret);
        let verification = hasher
            .verify("AKW", mac, secret, any_hash(), &Metrics::default())
            .await;
        assert_eq!(verification, Verification::Overloaded);
    }
}
