//! The AccessKey reconciler's own requeues: when a reconciliation asks to look at its key again
//! (a deadline within the horizon, a write lost to a conflict, a transient error), the request
//! waits here and then goes through the intake like every other request, in the lane of the
//! cached key. kube-runtime is always told to wait for a change.
//!
//! why: kube-runtime's scheduler starts what it cannot start at once in no particular order
//! (see `intake`). A requeue it held for a key waiting for its first issuance (a lost write, an
//! error) could start ahead of a deactivation the intake had handed out before it, each a hash.
//!
//! Like kube-runtime's, a key has at most one requeue pending, and each finished reconciliation
//! replaces it with what it asks for, nothing included.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{ObjectRef, ObjectRefExtra};
use tokio::sync::mpsc;
use tokio_util::time::{delay_queue, DelayQueue};

use super::cached_key::CachedKey;

/// Above this many slots, a drained queue's memory is given back.
const KEEP_CAPACITY: usize = 1024;

/// Where reconciliations leave what they ask for; [`run`] carries it out.
pub struct Requeues {
    asked: mpsc::UnboundedSender<(ObjectRef<CachedKey>, Option<Duration>)>,
}

/// What [`run`] reads.
pub type Asked = mpsc::UnboundedReceiver<(ObjectRef<CachedKey>, Option<Duration>)>;

impl Requeues {
    /// Requeues, and the receiver [`run`] reads them from.
    pub fn new() -> (Self, Asked) {
        let (asked, receiver) = mpsc::unbounded_channel();
        (Self { asked }, receiver)
    }

    /// Replaces the pending requeue of `key`: after `after`, or none.
    pub fn set(&self, mut key: ObjectRef<CachedKey>, after: Option<Duration>) {
        // why: the name and namespace identify it (`extra` takes no part in comparing); the
        // resourceVersion and uid would only be held while it waits.
        key.extra = ObjectRefExtra::default();
        // why: the receiver ends only with the controller; nothing is left to requeue then.
        let _ = self.asked.send((key, after));
    }
}

/// Sends each key to `due` when its requeue comes due, until `asked` or `due` closes.
pub async fn run(mut asked: Asked, due: mpsc::UnboundedSender<ObjectRef<CachedKey>>) {
    let mut pending = Pending::default();
    loop {
        tokio::select! {
            next = asked.recv() => {
                let Some((key, after)) = next else { return };
                pending.set(key, after);
            }
            Some(expired) = pending.queue.next(), if !pending.queue.is_empty() => {
                let key = expired.into_inner();
                pending.entries.remove(&key);
                if due.send(key).is_err() {
                    return;
                }
            }
        }
        pending.give_back_drained();
    }
}

/// The requeues not yet due, at most one per key.
#[derive(Default)]
struct Pending {
    queue: DelayQueue<ObjectRef<CachedKey>>,
    entries: HashMap<ObjectRef<CachedKey>, delay_queue::Key>,
}

impl Pending {
    fn set(&mut self, key: ObjectRef<CachedKey>, after: Option<Duration>) {
        if let Some(entry) = self.entries.remove(&key) {
            self.queue.remove(&entry);
        }
        if let Some(after) = after {
            let entry = self.queue.insert(key.clone(), after);
            self.entries.insert(key, entry);
        }
    }

    // why: a burst of requeues (errors during a burst of new keys) would otherwise keep the
    // capacity it grew to.
    fn give_back_drained(&mut self) {
        if self.entries.is_empty() && self.queue.capacity() > KEEP_CAPACITY {
            *self = Self::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectRef<CachedKey> {
        ObjectRef::new(name).within("team")
    }

    fn started() -> (Requeues, mpsc::UnboundedReceiver<ObjectRef<CachedKey>>) {
        let (requeues, asked) = Requeues::new();
        let (due, came) = mpsc::unbounded_channel();
        tokio::spawn(run(asked, due));
        (requeues, came)
    }

    #[tokio::test(start_paused = true)]
    async fn a_requeue_comes_due_after_its_delay_in_order() {
        let (requeues, mut came) = started();
        requeues.set(key("later"), Some(Duration::from_secs(20)));
        requeues.set(key("sooner"), Some(Duration::from_secs(10)));
        let start = tokio::time::Instant::now();
        assert_eq!(came.recv().await, Some(key("sooner")));
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(came.recv().await, Some(key("later")));
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn each_reconciliation_replaces_the_pending_requeue() {
        let (requeues, mut came) = started();
        requeues.set(key("a"), Some(Duration::from_secs(5)));
        requeues.set(key("a"), Some(Duration::from_secs(30)));
        requeues.set(key("b"), Some(Duration::from_secs(1)));
        requeues.set(key("b"), None);
        requeues.set(key("c"), Some(Duration::from_secs(40)));
        let start = tokio::time::Instant::now();
        assert_eq!(came.recv().await, Some(key("a")), "once, at its last delay");
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        assert_eq!(came.recv().await, Some(key("c")), "b's was withdrawn");
        let more = tokio::time::timeout(Duration::from_secs(3600), came.recv()).await;
        assert!(more.is_err(), "came due twice: {more:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drained_burst_gives_its_memory_back() {
        let mut pending = Pending::default();
        for i in 0..5_000 {
            pending.set(key(&format!("key-{i}")), Some(Duration::from_millis(200)));
        }
        pending.give_back_drained();
        assert!(
            pending.queue.capacity() >= 5_000,
            "kept while requeues wait"
        );
        for i in 0..5_000 {
            pending.set(key(&format!("key-{i}")), None);
        }
        pending.give_back_drained();
        assert_eq!(pending.queue.capacity(), 0);
        assert_eq!(pending.entries.capacity(), 0);
    }
}
