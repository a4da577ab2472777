//! argon2id hashing of new secrets with working memory kept between hashes while they keep
//! coming (a burst of issuances), and released once they stop.

use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::keys::hash::{HashMemory, HashParams};
use crate::keys::material::SecretKey;
use crate::keys::KeyError;
use crate::sync::lock;

/// How long hashing memory is kept after its last hash.
// why: in a burst the next hash follows within milliseconds, and allocating the memory cost
// (19 MiB by default) anew cost page faults or a memset each time; idle, the controller should
// not hold a hash's memory per core.
#[cfg(not(test))]
const KEEP_IDLE_MEMORY: Duration = Duration::from_secs(5);
#[cfg(test)]
const KEEP_IDLE_MEMORY: Duration = Duration::from_secs(1);

/// Working memories not hashing right now, with when each last hashed.
// why: process-wide, like the allocator it stands in for; the controller hashes on one thread
// per core (`hash_pool`), so this holds at most one memory per core.
static IDLE: Mutex<Idle> = Mutex::new(Idle {
    memories: Vec::new(),
    release: None,
});

struct Idle {
    memories: Vec<(HashMemory, Instant)>,
    /// The task that releases idle memories, while any is kept.
    release: Option<JoinHandle<()>>,
}

/// Hashes `secret` with `params` in kept working memory (a blocking call: run it off the async
/// runtime). The PHC string is the one [`crate::keys::hash::hash_secret`] makes.
pub fn hash_secret(secret: &SecretKey, params: &HashParams) -> Result<String, KeyError> {
    let kept = {
        let mut idle = lock(&IDLE);
        let found = idle.memories.iter().position(|(m, _)| m.params() == params);
        found.map(|i| idle.memories.swap_remove(i).0)
    };
    let mut memory = match kept {
        Some(memory) => memory,
        None => HashMemory::new(params)?,
    };
    let hash = memory.hash(secret);
    let mut idle = lock(&IDLE);
    // why: a release task ends with its runtime (one per test); a later runtime starts another.
    if idle.release.as_ref().is_none_or(JoinHandle::is_finished) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => idle.release = Some(runtime.spawn(release_idle_memory())),
            // why: nothing would release it, so nothing is kept.
            Err(_) => return hash,
        }
    }
    idle.memories.push((memory, Instant::now()));
    hash
}

/// Releases kept memories once they have been idle for [`KEEP_IDLE_MEMORY`].
async fn release_idle_memory() {
    loop {
        tokio::time::sleep(KEEP_IDLE_MEMORY).await;
        let cutoff = Instant::now().checked_sub(KEEP_IDLE_MEMORY);
        if cutoff.is_some_and(release_idle_since) {
            return;
        }
    }
}

/// Drops the memories idle since `cutoff` or earlier; whether none is kept any more (then the
/// release task ends, and the next hash starts another).
fn release_idle_since(cutoff: Instant) -> bool {
    let (released, none_left) = {
        let mut idle = lock(&IDLE);
        let (released, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut idle.memories)
            .into_iter()
            .partition(|(_, last_used)| *last_used <= cutoff);
        idle.memories = kept;
        let none_left = idle.memories.is_empty();
        if none_left {
            idle.release = None;
        }
        (released, none_left)
    };
    // why: freeing 19 MiB each happens outside the lock.
    drop(released);
    none_left
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hash::{hash_cost, verify_secret};

    #[tokio::test]
    async fn kept_memory_hashes_verifiably_and_is_released_once_idle() {
        let params = HashParams {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        };
        let secret = SecretKey::generate();
        let first = hash_secret(&secret, &params).unwrap();
        let second = hash_secret(&secret, &params).unwrap();
        assert_ne!(first, second);
        assert!(verify_secret(&secret, &first) && verify_secret(&secret, &second));
        assert_eq!(hash_cost(&second), Some(params));
        let kept = |p: &HashParams| lock(&IDLE).memories.iter().any(|(m, _)| m.params() == p);
        assert!(kept(&params), "kept right after hashing");
        tokio::time::sleep(KEEP_IDLE_MEMORY * 3).await;
        assert!(!kept(&params), "released once idle");
        hash_secret(&secret, &params).unwrap();
        assert!(kept(&params), "kept again by the next hash");
    }

    #[tokio::test]
    async fn memory_is_kept_between_hashes_on_the_hash_pool() {
        let params = HashParams {
            memory_kib: 128,
            iterations: 1,
            parallelism: 1,
        };
        let pool = super::super::hash_pool::HashPool::new(1).unwrap();
        let hash = pool
            .run(move || hash_secret(&SecretKey::generate(), &params))
            .await
            .unwrap();
        assert!(hash.is_ok());
        let kept = lock(&IDLE)
            .memories
            .iter()
            .any(|(m, _)| m.params() == &params);
        assert!(kept, "the pool's thread keeps its memory for the next hash");
    }
}
