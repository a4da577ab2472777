//! How fresh the verifier's view of the cluster is, and what it promises past its bound.
//!
//! A watched scope (a namespace, or all of them) is confirmed current when its list completes,
//! when its watch delivers an event, and when a cheap read of the API server succeeds while
//! its watch is open. Staleness is the time since the least recently confirmed scope was.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What checks get once the view is older than `--max-staleness`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WhenStale {
    /// 503 with `Retry-After` (`/v1/verify`: code STALE): a revoked key stops working at the
    /// bound even when this replica cannot see the revocation.
    #[default]
    Refuse,
    /// Keep answering from the last view, marked with `X-Keywarden-Stale-Seconds`.
    Serve,
}

/// The default `--max-staleness`: well above the API server's one-minute watch bookmarks, so
/// a slow API server or a short blip never takes the verifier down.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(300);

/// The freshness of every watched scope.
pub struct Freshness {
    max_staleness: Duration,
    when_stale: WhenStale,
    scopes: Mutex<Vec<ScopeState>>,
}

#[derive(Clone, Copy, Debug)]
struct ScopeState {
    /// When the scope was last known to be current.
    confirmed: Instant,
    /// Whether its watch is open (listed, and no error since).
    watching: bool,
    /// Counts the watch's losses, so a read that started before one never confirms after it.
    losses: u64,
}

/// A read of the API server under way for a scope whose watch was open when it started.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    scope: usize,
    started: Instant,
    losses: u64,
}

/// The view is older than the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stale {
    pub staleness: Duration,
    pub max_staleness: Duration,
    pub when_stale: WhenStale,
}

impl Freshness {
    pub fn new(max_staleness: Duration, when_stale: WhenStale) -> Self {
        Self {
            max_staleness,
            when_stale,
            scopes: Mutex::new(Vec::new()),
        }
    }

    pub fn max_staleness(&self) -> Duration {
        self.max_staleness
    }

    /// Starts tracking `count` scopes as of `now` (a verifier that watches nothing is never
    /// stale).
    pub fn track(&self, count: usize, now: Instant) {
        *self.lock() = vec![
            ScopeState {
                confirmed: now,
                watching: false,
                losses: 0,
            };
            count
        ];
    }

    /// The scope's list completed at `now`: its watch is open and its view current.
    pub fn listed(&self, scope: usize, now: Instant) {
        self.update(scope, |state| {
            state.watching = true;
            state.confirmed = state.confirmed.max(now);
        });
    }

    /// The scope's open watch delivered an event at `now`.
    pub fn watched(&self, scope: usize, now: Instant) {
        self.update(scope, |state| {
            if state.watching {
                state.confirmed = state.confirmed.max(now);
            }
        });
    }

    /// The scope's watch failed: nothing confirms it until it has listed again.
    pub fn lost(&self, scope: usize) {
        self.update(scope, |state| {
            state.watching = false;
            state.losses += 1;
        });
    }

    /// Whether the scope's watch is open.
    pub fn is_watching(&self, scope: usize) -> bool {
        self.lock().get(scope).is_some_and(|state| state.watching)
    }

    /// A read of the API server starting at `now`; `None` when the scope's watch is not open,
    /// as a reachable API server says nothing about a watch that is not running.
    pub fn start_probe(&self, scope: usize, now: Instant) -> Option<Probe> {
        let scopes = self.lock();
        let state = scopes.get(scope).filter(|state| state.watching)?;
        Some(Probe {
            scope,
            started: now,
            losses: state.losses,
        })
    }

    /// The read succeeded: the view was current when it started, unless the watch failed since.
    pub fn probe_succeeded(&self, probe: Probe) {
        self.update(probe.scope, |state| {
            if state.watching && state.losses == probe.losses {
                state.confirmed = state.confirmed.max(probe.started);
            }
        });
    }

    /// Time since the least recently confirmed scope was confirmed.
    pub fn staleness(&self, now: Instant) -> Duration {
        self.lock()
            .iter()
            .map(|state| now.saturating_duration_since(state.confirmed))
            .max()
            .unwrap_or_default()
    }

    /// `Some` once the view is older than `--max-staleness`.
    pub fn stale(&self, now: Instant) -> Option<Stale> {
        let staleness = self.staleness(now);
        (staleness > self.max_staleness).then_some(Stale {
            staleness,
            max_staleness: self.max_staleness,
            when_stale: self.when_stale,
        })
    }

    fn update(&self, scope: usize, change: impl FnOnce(&mut ScopeState)) {
        if let Some(state) = self.lock().get_mut(scope) {
            change(state);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ScopeState>> {
        crate::sync::lock(&self.scopes)
    }
}

/// How often a scope is confirmed by a read: often enough that a healthy view stays well
/// inside the bound, at most every five seconds.
pub fn probe_interval(max_staleness: Duration) -> Duration {
    (max_staleness / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    fn seconds(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_verifier_that_watches_nothing_is_never_stale() {
        let freshness = Freshness::new(BOUND, WhenStale::Refuse);
        let now = Instant::now();
        assert_eq!(freshness.stale(now + seconds(3600)), None);
    }

    #[test]
    fn the_view_goes_stale_past_the_bound_since_the_last_confirmation() {
        let freshness = Freshness::new(BOUND, WhenStale::Refuse);
        let start = Instant::now();
        freshness.track(1, start);
        freshness.listed(0, start + seconds(1));
        freshness.watched(0, start + seconds(5));
        assert_eq!(freshness.stale(start + seconds(15)), None);
        assert_eq!(
            freshness.stale(start + seconds(16)),
            Some(Stale {
                staleness: seconds(11),
                max_staleness: BOUND,
                when_stale: WhenStale::Refuse,
            })
        );
    }

    #[test]
    fn a_successful_read_confirms_only_an_open_watch() {
        let freshness = Freshness::new(BOUND, WhenStale::Refuse);
        let start = Instant::now();
        freshness.track(1, start);
        assert!(freshness.start_probe(0, start).is_none(), "not listed yet");
        freshness.listed(0, start);
        let probe = freshness.start_probe(0, start + seconds(8));
        freshness.probe_succeeded(probe.expect("the watch is open"));
        assert_eq!(freshness.staleness(start + seconds(9)), seconds(1));

        freshness.lost(0);
        assert!(freshness.start_probe(0, start + seconds(9)).is_none());
        freshness.watched(0, start + seconds(9));
        assert_eq!(
            freshness.staleness(start + seconds(20)),
            seconds(12),
            "neither a read nor an event confirms a lost watch"
        );
    }

    #[test]
    fn a_read_that_started_before_the_watch_failed_confirms_nothing() {
        let freshness = Freshness::new(BOUND, WhenStale::Refuse);
        let start = Instant::now();
        freshness.track(1, start);
        freshness.listed(0, start);
        let probe = freshness.start_probe(0, start + seconds(5));
        freshness.lost(0);
        freshness.listed(0, start + seconds(6));
        freshness.probe_succeeded(probe.expect("the watch was open"));
        freshness.lost(0);
        assert_eq!(freshness.staleness(start + seconds(7)), seconds(1));
    }

    #[test]
    fn the_least_fresh_scope_sets_the_staleness() {
        let freshness = Freshness::new(BOUND, WhenStale::Serve);
        let start = Instant::now();
        freshness.track(2, start);
        freshness.listed(0, start + seconds(4));
        freshness.listed(1, start + seconds(1));
        assert_eq!(freshness.staleness(start + seconds(6)), seconds(5));
        assert_eq!(
            freshness
                .stale(start + seconds(12))
                .map(|stale| stale.when_stale),
            Some(WhenStale::Serve)
        );
    }

    #[test]
    fn reads_come_often_enough_to_stay_inside_the_bound() {
        assert_eq!(probe_interval(seconds(300)), seconds(5));
        assert_eq!(probe_interval(seconds(3)), Duration::from_millis(750));
        assert_eq!(probe_interval(Duration::ZERO), Duration::from_millis(100));
    }
}
