//! The clock ServiceAccount tokens are minted and checked against, which tests can move forward.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Wall-clock time plus an offset that only grows; clones share the offset.
///
/// `cluster.clock().advance(Duration::from_secs(3600))` makes every token minted before expire
/// without waiting.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_millis: Arc<AtomicU64>,
}

impl Clock {
    /// The current time as devcluster's authentication sees it.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = self.offset_millis.load(Ordering::Relaxed);
        let offset = chrono::Duration::milliseconds(i64::try_from(offset).unwrap_or(i64::MAX));
        Utc::now()
            .checked_add_signed(offset)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let millis = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_millis.fetch_add(millis, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_a_clone_moves_every_clone() {
        let clock = Clock::default();
        let before = clock.now();
        clock.clone().advance(Duration::from_secs(3600));
        let moved = clock.now() - before;
        assert!(moved >= chrono::Duration::seconds(3600), "moved {moved}");
        assert!(moved < chrono::Duration::seconds(3660), "moved {moved}");
    }
}
