//! What keeps verification cheap and abuse bounded: the verified cache, the failure cache and
//! failure rate limits, all keyed by an HMAC of the presented secret and all of bounded size.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::stored_hash::StoredHash;

use crate::keys::material::SecretKey;
use crate::sync::{lock, read, write};

/// HMAC-SHA256 of a presented secret under a per-process random key: safe to keep in memory
/// and useless outside this process.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretMac([u8; 32]);

impl SecretMac {
    fn matches(&self, other: &SecretMac) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// Computes [`SecretMac`]s with a key drawn once per process.
pub struct SecretMacer {
    keyed: Hmac<Sha256>,
}

impl SecretMacer {
    /// A macer with a fresh random key.
    pub fn random() -> Self {
        let mut key = zeroize::Zeroizing::new([0u8; 64]);
        rand::rng().fill_bytes(key.as_mut());
        Self {
            keyed: <Hmac<Sha256> as KeyInit>::new(&(*key).into()),
        }
    }

    /// The MAC of `secret` presented for `access_key_id`.
    pub fn mac(&self, access_key_id: &str, secret: &SecretKey) -> SecretMac {
        let mut mac = self.keyed.clone();
        mac.update(access_key_id.as_bytes());
        mac.update(&[0]);
        mac.update(secret.expose().as_bytes());
        SecretMac(mac.finalize().into_bytes().into())
    }
}

/// A map that holds at most `capacity` entries, evicting the oldest insertion first.
struct BoundedMap<K, V> {
    entries: HashMap<K, V>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Clone + Eq + Hash, V> BoundedMap<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key)
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key)
    }

    fn insert(&mut self, key: K, value: V) {
        if self.entries.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => self.entries.remove(&oldest),
                None => break,
            };
        }
        // why: removals leave their keys in `order`; compact so it stays bounded too.
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order.retain(|key| entries.contains_key(key));
        }
    }

    fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }
}

/// A verification that succeeded: this MAC matched this secret hash.
struct Verified {
    mac: SecretMac,
    secret_hash: StoredHash,
}

/// Successful verifications, one per access ID (only one secret can match an ID's hash).
pub struct VerifiedCache {
    // why: read on every request, written once per verification: a read lock keeps concurrent
    // requests from queueing behind each other.
    entries: RwLock<BoundedMap<String, Verified>>,
}

impl VerifiedCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(BoundedMap::new(capacity)),
        }
    }

    /// Whether `mac` was verified against exactly `secret_hash` for this ID.
    pub fn is_verified(
        &self,
        access_key_id: &str,
        mac: &SecretMac,
        secret_hash: &StoredHash,
    ) -> bool {
        read(&self.entries)
            .get(access_key_id)
            .is_some_and(|v| v.mac.matches(mac) && v.secret_hash == *secret_hash)
    }

    pub fn insert(&self, access_key_id: &str, mac: SecretMac, secret_hash: StoredHash) {
        write(&self.entries).insert(access_key_id.to_owned(), Verified { mac, secret_hash });
    }

    /// Drops what was verified for these IDs (a watch event changed or removed them).
    pub fn invalidate(&self, access_key_ids: &[String]) {
        let mut entries = write(&self.entries);
        for id in access_key_ids {
            entries.remove(id);
        }
    }
}

/// Recent wrong secrets per (ID, MAC), so repeating one costs no argon2 work.
pub struct FailureCache {
    entries: Mutex<BoundedMap<(String, SecretMac), StoredHash>>,
}

impl FailureCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(BoundedMap::new(capacity)),
        }
    }

    /// Whether this MAC already failed against exactly `secret_hash`.
    pub fn has_failed(
        &self,
        access_key_id: &str,
        mac: &SecretMac,
        secret_hash: &StoredHash,
    ) -> bool {
        lock(&self.entries)
            .get(&(access_key_id.to_owned(), *mac))
            .is_some_and(|hash| *hash == *secret_hash)
    }

    pub fn insert(&self, access_key_id: &str, mac: SecretMac, secret_hash: StoredHash) {
        lock(&self.entries).insert((access_key_id.to_owned(), mac), secret_hash);
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Limits how many failed verifications a subject (access ID or client address) may cause.
pub struct FailureLimiter<K> {
    buckets: Mutex<BoundedMap<K, Bucket>>,
    rate: f64,
    burst: f64,
}

impl<K: Clone + Eq + Hash> FailureLimiter<K> {
    /// Allows `per_second` failures a second on average and bursts of twice that.
    pub fn new(per_second: u32, capacity: usize) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            buckets: Mutex::new(BoundedMap::new(capacity)),
            rate,
            burst: 2.0 * rate,
        }
    }

    /// Takes one attempt from `subject`, or says how long to wait for one. Charging before the
    /// work (and refunding what turns out not to be a failure) is what bounds the work: checking
    /// first and charging after would let every concurrent request past an empty bucket.
    pub fn try_charge(&self, subject: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = lock(&self.buckets);
        match buckets.get_mut(subject) {
            Some(bucket) => {
                self.refill(bucket, now);
                if bucket.tokens < 1.0 {
                    return Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate));
                }
                bucket.tokens -= 1.0;
            }
            None => buckets.insert(
                subject.clone(),
                Bucket {
                    tokens: self.burst - 1.0,
                    updated: now,
                },
            ),
        }
        Ok(())
    }

    /// Gives back an attempt that turned out not to be a failure.
    pub fn refund(&self, subject: &K) {
        if let Some(bucket) = lock(&self.buckets).get_mut(subject) {
            bucket.tokens = (bucket.tokens + 1.0).min(self.burst);
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
    }
}

/// Failure limits per (access ID, client address) and per client address.
// why: a bucket per access ID alone would let a flood from other addresses lock the holder of
// the right secret out of its first verification; one per (ID, client) limits guessing on an
// ID from each address, and the per-client bucket bounds one address across all IDs.
pub struct FailureLimits {
    pub per_key_and_client: FailureLimiter<(String, Option<IpAddr>)>,
    pub per_client: FailureLimiter<IpAddr>,
}

impl FailureLimits {
    /// Charges one verification attempt to the (ID, client) pair and to the client, or says
    /// how long to wait when either has none left (then neither is charged).
    pub fn try_charge(&self, access_key_id: &str, client: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let pair = (access_key_id.to_owned(), client);
        self.per_key_and_client.try_charge(&pair, now)?;
        if let Some(ip) = client {
            if let Err(wait) = self.per_client.try_charge(&ip, now) {
                self.per_key_and_client.refund(&pair);
                return Err(wait);
            }
        }
        Ok(())
    }

    /// Gives back an attempt that did not fail (the secret matched, or no work was done).
    pub fn refund(&self, access_key_id: &str, client: Option<IpAddr>) {
        self.per_key_and_client
            .refund(&(access_key_id.to_owned(), client));
        if let Some(ip) = client {
            self.per_client.refund(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bounded_map_evicts_oldest_beyond_capacity() {
        let mut map = BoundedMap::new(2);
        map.insert(1, "a");
        map.insert(2, "b");
        map.insert(3, "c");
        assert_eq!(map.entries.len(), 2);
        assert!(map.get(&1).is_none());
        assert_eq!(map.get(&3), Some(&"c"));
        for i in 0..100 {
            map.insert(i, "x");
            map.remove(&i);
        }
        assert!(map.order.len() <= 4);
    }

    #[test]
    fn limiter_blocks_after_burst_and_recovers_with_time() {
        let limiter = FailureLimiter::new(2, 10);
        let start = Instant::now();
        let subject = "AKWTEST".to_owned();
        for attempt in 0..4 {
            assert!(
                limiter.try_charge(&subject, start).is_ok(),
                "attempt {attempt} is within the burst of 4"
            );
        }
        let wait = limiter
            .try_charge(&subject, start)
            .expect_err("limited after the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limiter
            .try_charge(&subject, start + Duration::from_secs(1))
            .is_ok());
        assert!(limiter.try_charge(&"other".to_owned(), start).is_ok());
    }

    #[test]
    fn concurrent_attempts_never_exceed_the_burst_and_refunds_give_them_back() {
        let limiter = Arc::new(FailureLimiter::new(2, 10));
        let start = Instant::now();
        let subject = "AKWTEST".to_owned();
        let granted: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..16)
                .map(|_| scope.spawn(|| limiter.try_charge(&subject, start).is_ok()))
                .collect();
            workers
                .into_iter()
                .map(|worker| usize::from(worker.join().expect("worker ran")))
                .sum()
        });
        assert_eq!(granted, 4, "16 racing attempts share a burst of 4");
        limiter.refund(&subject);
        assert!(limiter.try_charge(&subject, start).is_ok());
        assert!(limiter.try_charge(&subject, start).is_err());
    }

    #[test]
    fn a_limited_client_charges_nothing_to_the_key() {
        let limits = FailureLimits {
            per_key_and_client: FailureLimiter::new(5, 10),
            per_client: FailureLimiter::new(1, 10),
        };
        let client = Some(IpAddr::from([192, 0, 2, 1]));
        assert!(limits.try_charge("AKWA", client).is_ok());
        assert!(limits.try_charge("AKWA", client).is_ok());
        assert!(limits.try_charge("AKWA", client).is_err());
        // why: the pair's bucket (burst 10) lost only the two attempts that went through.
        let pair = ("AKWA".to_owned(), client);
        for attempt in 0..8 {
            assert!(
                limits
                    .per_key_and_client
                    .try_charge(&pair, Instant::now())
                    .is_ok(),
                "attempt {attempt} fits the pair's remaining burst"
            );
        }
    }

    #[test]
    fn failures_on_an_id_from_one_client_leave_other_clients_untouched() {
        let limits = FailureLimits {
            per_key_and_client: FailureLimiter::new(1, 10),
            per_client: FailureLimiter::new(100, 10),
        };
        let flooder = Some(IpAddr::from([198, 51, 100, 1]));
        let holder = Some(IpAddr::from([192, 0, 2, 1]));
        while limits.try_charge("AKWA", flooder).is_ok() {}
        assert!(limits.try_charge("AKWA", holder).is_ok());
        assert!(limits.try_charge("AKWB", flooder).is_ok());
    }
}
