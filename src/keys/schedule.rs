//! Policy timers: expiry, unused deadline, rotation grace end, auto-rotation, next deadline.
//!
//! Everything takes `now` as an argument so tests control time.

use chrono::{DateTime, Duration, SubsecRound as _, Utc};

/// The timers of a governing policy, already parsed; `None` means never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// Keys expire this long after their latest issuance (or the policy's `appliedAt`).
    pub expire_after: Option<Duration>,
    /// Keys unused this long are deactivated.
    pub deactivate_after_unused: Option<Duration>,
    /// How long previous credentials stay valid after a rotation.
    pub rotation_grace_period: Duration,
    /// Rotate automatically this long before expiry instead of expiring.
    pub rotate_before_expiry: Option<Duration>,
}

impl Timers {
    /// Builds timers from parsed durations, where zero means never.
    pub fn from_durations(
        expire_after: Duration,
        deactivate_after_unused: Duration,
        rotation_grace_period: Duration,
        rotate_before_expiry: Duration,
    ) -> Self {
        let positive = |d: Duration| (d > Duration::zero()).then_some(d);
        Self {
            expire_after: positive(expire_after),
            deactivate_after_unused: positive(deactivate_after_unused),
            rotation_grace_period: rotation_grace_period.max(Duration::zero()),
            rotate_before_expiry: positive(rotate_before_expiry),
        }
    }
}

/// The moments in a key's life that its timers count from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyTimes {
    /// When the current credentials were issued (first issuance or latest rotation).
    pub issued_at: DateTime<Utc>,
    /// When the governing policy's current spec took effect.
    pub policy_applied_at: Option<DateTime<Utc>>,
    /// Last successful verification, as recorded by the verifier.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Last reactivation of a key deactivated for non-use.
    pub reactivated_at: Option<DateTime<Utc>>,
}

/// What the timers say about a key at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerState {
    /// No timer has fired.
    Live,
    /// The key should be rotated automatically now (instead of expiring).
    RotationDue,
    /// The key is past its expiry.
    Expired,
    /// The key has not been used for too long.
    Unused,
}

/// `at` without its fraction of a second: status times are RFC 3339 at second precision, as
/// Kubernetes writes times. Truncating (never rounding up) keeps every deadline computed from
/// it at or before the exact one, so no validity is extended.
pub fn whole_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(0)
}

/// `max(issuance, policy appliedAt) + expireAfter`, or `None` when keys never expire; whole
/// seconds even when an earlier version wrote its inputs with fractions.
pub fn expires_at(times: &KeyTimes, timers: &Timers) -> Option<DateTime<Utc>> {
    let expire_after = timers.expire_after?;
    let basis = times
        .policy_applied_at
        .map_or(times.issued_at, |applied| applied.max(times.issued_at));
    basis.checked_add_signed(expire_after).map(whole_seconds)
}

/// When an automatic rotation is due, or `None` when the policy does not auto-rotate.
pub fn rotation_due_at(times: &KeyTimes, timers: &Timers) -> Option<DateTime<Utc>> {
    let before = timers.rotate_before_expiry?;
    expires_at(times, timers)?.checked_sub_signed(before)
}

/// The longest the verifier waits between two writes of one key's `lastUsedAt`: its
/// `--last-used-flush-seconds` may not be set higher.
pub const MAX_LAST_USE_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// How late, past what its interval allows, the verifier may write a use: its flush tick (1 s),
/// whole-second truncation (1 s) and the write itself.
pub const LAST_USE_WRITE_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// `deactivateAfterUnused` after the later of last use, issuance and reactivation, plus what
/// the verifier's last-use writes can lag behind the real last use.
///
/// why: `lastUsedAt` reaches the status late. The first use of an issuance is written at the
/// verifier's next tick ([`LAST_USE_WRITE_DELAY`]); later uses at most once per write
/// interval ([`MAX_LAST_USE_WRITE_INTERVAL`] more). Without that slack a key in use under a
/// period shorter than the interval was deactivated as unused.
pub fn unused_deadline(times: &KeyTimes, timers: &Timers) -> Option<DateTime<Utc>> {
    let unused_after = timers.deactivate_after_unused?;
    let started = times.reactivated_at.map_or(times.issued_at, |reactivated| {
        reactivated.max(times.issued_at)
    });
    let used = times.last_used_at.filter(|used| *used >= started);
    let (basis, lag) = match used {
        Some(used) => (
            used,
            MAX_LAST_USE_WRITE_INTERVAL.saturating_add(LAST_USE_WRITE_DELAY),
        ),
        None => (started, LAST_USE_WRITE_DELAY),
    };
    let lag = Duration::from_std(lag).unwrap_or_else(|_| Duration::zero());
    basis
        .checked_add_signed(unused_after)
        .and_then(|at| at.checked_add_signed(lag))
        .map(whole_seconds)
}

/// When previous credentials issued until `rotated_at` stop being valid.
pub fn grace_ends_at(rotated_at: DateTime<Utc>, timers: &Timers) -> DateTime<Utc> {
    whole_seconds(
        rotated_at
            .checked_add_signed(timers.rotation_grace_period)
            .unwrap_or(rotated_at),
    )
}

/// Which timer, if any, has fired at `now`. Auto-rotation wins over expiry and non-use.
pub fn timer_state(times: &KeyTimes, timers: &Timers, now: DateTime<Utc>) -> TimerState {
    let fired = |deadline: Option<DateTime<Utc>>| deadline.is_some_and(|at| now >= at);
    if fired(rotation_due_at(times, timers)) {
        TimerState::RotationDue
    } else if fired(expires_at(times, timers)) {
        TimerState::Expired
    } else if fired(unused_deadline(times, timers)) {
        TimerState::Unused
    } else {
        TimerState::Live
    }
}

/// The earliest of `deadlines` strictly after `now`: when the controller must look again.
pub fn next_deadline(
    deadlines: impl IntoIterator<Item = Option<DateTime<Utc>>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    deadlines.into_iter().flatten().filter(|at| *at > now).min()
}

/// The key's own upcoming deadlines (auto-rotation, expiry, non-use), not yet filtered by `now`.
pub fn key_deadlines(times: &KeyTimes, timers: &Timers) -> [Option<DateTime<Utc>>; 3] {
    [
        rotation_due_at(times, timers),
        expires_at(times, timers),
        unused_deadline(times, timers),
    ]
}

/// How long to wait from `now` until `deadline` (zero when it has passed).
pub fn wait_until(deadline: DateTime<Utc>, now: DateTime<Utc>) -> std::time::Duration {
    (deadline - now).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn timers(expire: i64, unused: i64, grace: i64, rotate_before: i64) -> Timers {
        Timers::from_durations(
            Duration::seconds(expire),
            Duration::seconds(unused),
            Duration::seconds(grace),
            Duration::seconds(rotate_before),
        )
    }

    fn issued(seconds: i64) -> KeyTimes {
        KeyTimes {
            issued_at: at(seconds),
            ..KeyTimes::default()
        }
    }

    #[test]
    fn expiry_counts_from_issuance() {
        assert_eq!(
            expires_at(&issued(10), &timers(100, 0, 0, 0)),
            Some(at(110))
        );
    }

    #[test]
    fn policy_change_after_issuance_resets_expiry() {
        let times = KeyTimes {
            policy_applied_at: Some(at(50)),
            ..issued(10)
        };
        assert_eq!(expires_at(&times, &timers(100, 0, 0, 0)), Some(at(150)));
    }

    #[test]
    fn policy_applied_before_issuance_does_not_shorten_expiry() {
        let times = KeyTimes {
            policy_applied_at: Some(at(0)),
            ..issued(10)
        };
        assert_eq!(expires_at(&times, &timers(100, 0, 0, 0)), Some(at(110)));
    }

    #[test]
    fn deadlines_from_fractional_times_are_truncated_to_the_second_never_extended() {
        let fractional = at(10) + Duration::nanoseconds(657_688_983);
        let times = KeyTimes {
            issued_at: fractional,
            ..KeyTimes::default()
        };
        let timers = timers(100, 50, 30, 0);
        assert_eq!(expires_at(&times, &timers), Some(at(110)));
        assert_eq!(
            unused_deadline(&times, &timers),
            Some(at(60 + FIRST_USE_LAG))
        );
        assert_eq!(grace_ends_at(fractional, &timers), at(40));
        assert_eq!(whole_seconds(fractional), at(10));
        assert!(!serde_json::to_string(&whole_seconds(fractional))
            .unwrap()
            .contains('.'));
    }

    #[test]
    fn zero_durations_mean_never() {
        let times = issued(0);
        let never = timers(0, 0, 0, 0);
        assert_eq!(expires_at(&times, &never), None);
        assert_eq!(unused_deadline(&times, &never), None);
        assert_eq!(rotation_due_at(&times, &never), None);
        assert_eq!(timer_state(&times, &never, at(1_000_000)), TimerState::Live);
    }

    /// Seconds the unused deadline allows past the period before any use of an issuance.
    const FIRST_USE_LAG: i64 = 5;
    /// Seconds it allows past the period after a recorded use.
    const USE_LAG: i64 = 65;

    #[test]
    fn unused_deadline_counts_from_latest_of_use_issuance_and_reactivation() {
        let t = timers(0, 30, 0, 0);
        assert_eq!(
            unused_deadline(&issued(0), &t),
            Some(at(30 + FIRST_USE_LAG))
        );
        let used = KeyTimes {
            last_used_at: Some(at(20)),
            ..issued(0)
        };
        assert_eq!(unused_deadline(&used, &t), Some(at(50 + USE_LAG)));
        let reactivated = KeyTimes {
            reactivated_at: Some(at(40)),
            ..used
        };
        assert_eq!(
            unused_deadline(&reactivated, &t),
            Some(at(70 + FIRST_USE_LAG)),
            "a use before the reactivation does not count"
        );
    }

    #[test]
    fn a_period_shorter_than_the_write_interval_allows_for_uses_not_yet_written() {
        // why: a key checked every second under 8 s: the verifier wrote at(100) and writes its
        // next use a write interval later, at(160) at the latest, plus its delay.
        let t = timers(0, 8, 0, 0);
        let used = KeyTimes {
            last_used_at: Some(at(100)),
            ..issued(0)
        };
        let deadline = unused_deadline(&used, &t);
        let next_write = at(100)
            + Duration::from_std(MAX_LAST_USE_WRITE_INTERVAL + LAST_USE_WRITE_DELAY).unwrap();
        assert!(deadline.is_some_and(|d| d > next_write), "{deadline:?}");
        assert_eq!(timer_state(&used, &t, next_write), TimerState::Live);
        assert_eq!(deadline, Some(at(108 + USE_LAG)));
        // why: never used: only the first write's delay is allowed for.
        assert_eq!(timer_state(&issued(0), &t, at(12)), TimerState::Live);
        assert_eq!(timer_state(&issued(0), &t, at(13)), TimerState::Unused);
    }

    #[test]
    fn timers_fire_at_their_deadlines() {
        let t = timers(100, 30, 0, 0);
        let times = issued(0);
        assert_eq!(
            timer_state(&times, &t, at(29 + FIRST_USE_LAG)),
            TimerState::Live
        );
        assert_eq!(
            timer_state(&times, &t, at(30 + FIRST_USE_LAG)),
            TimerState::Unused
        );
        assert_eq!(timer_state(&times, &t, at(100)), TimerState::Expired);
    }

    #[test]
    fn auto_rotation_comes_before_expiry() {
        let t = timers(100, 0, 0, 10);
        let times = issued(0);
        assert_eq!(rotation_due_at(&times, &t), Some(at(90)));
        assert_eq!(timer_state(&times, &t, at(89)), TimerState::Live);
        assert_eq!(timer_state(&times, &t, at(90)), TimerState::RotationDue);
        assert_eq!(timer_state(&times, &t, at(200)), TimerState::RotationDue);
    }

    #[test]
    fn grace_ends_after_the_grace_period() {
        assert_eq!(grace_ends_at(at(10), &timers(0, 0, 300, 0)), at(310));
    }

    #[test]
    fn next_deadline_is_the_earliest_future_one() {
        let deadlines = [Some(at(5)), None, Some(at(50)), Some(at(20))];
        assert_eq!(next_deadline(deadlines, at(10)), Some(at(20)));
        assert_eq!(next_deadline([Some(at(5))], at(10)), None);
    }

    #[test]
    fn wait_until_a_past_deadline_is_zero() {
        assert_eq!(wait_until(at(5), at(10)), std::time::Duration::ZERO);
        assert_eq!(
            wait_until(at(15), at(10)),
            std::time::Duration::from_secs(5)
        );
    }
}
